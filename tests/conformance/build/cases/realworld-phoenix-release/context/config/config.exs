import Config

config :hello, HelloWeb.Endpoint,
  url: [host: "localhost"],
  render_errors: [formats: [html: HelloWeb.ErrorHTML], layout: false]

config :logger, :console, format: "$time $metadata[$level] $message\n"

import_config "#{config_env()}.exs"
