defmodule Hello.MixProject do
  use Mix.Project

  def project do
    [
      app: :hello,
      version: "0.1.0",
      elixir: "~> 1.14",
      start_permanent: Mix.env() == :prod,
      aliases: aliases(),
      deps: deps(),
      releases: [
        hello: [
          include_executables_for: [:unix],
          # A fixed cookie: a random one would make every build's image differ.
          cookie: "conf5-phoenix-release"
        ]
      ]
    ]
  end

  def application do
    [mod: {Hello.Application, []}, extra_applications: [:logger, :runtime_tools]]
  end

  # No hex dependencies: hex.pm cannot be reached where this case is built.
  defp deps, do: []

  defp aliases do
    [
      "assets.deploy": [
        "cmd mkdir -p priv/static/assets",
        "cmd cp assets/js/app.js priv/static/assets/app.js",
        "cmd cp assets/css/app.css priv/static/assets/app.css"
      ]
    ]
  end
end
