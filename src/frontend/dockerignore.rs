//! `.dockerignore` with Docker's matching rules (moby/patternmatcher).
