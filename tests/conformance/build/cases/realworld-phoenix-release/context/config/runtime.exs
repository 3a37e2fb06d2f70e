import Config

if System.get_env("PHX_SERVER") do
  config :hello, HelloWeb.Endpoint, server: true
end

if config_env() == :prod do
  port = String.to_integer(System.get_env("PORT") || "4000")
  config :hello, HelloWeb.Endpoint, http: [port: port]
end
