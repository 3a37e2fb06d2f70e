import Config

config :hello, HelloWeb.Endpoint, debug_errors: true
