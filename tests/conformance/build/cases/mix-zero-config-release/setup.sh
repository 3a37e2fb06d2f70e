# The context is fixtures/mix-zero-config, and the Dockerfile is the one `imgbuild init`
# writes for it (tests/elixir_release.rs checks that they still match): what `imgbuild .`
# builds with no Dockerfile, held to BuildKit.
repo=$(cd "$(dirname "$0")/../../../../.." && pwd)
cp -R "$repo/fixtures/mix-zero-config/." .
