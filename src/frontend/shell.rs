//! Word expansion as BuildKit's shell lexer does it (`frontend/dockerfile/shell/lex.go`):
//! `$VAR`, `${VAR:-x}` and friends, quote removal, escapes.
