defmodule Hello.Release do
  @moduledoc """
  Used for executing DB release tasks when run in production without Mix
  installed.
  """
  @app :hello

  def migrate do
    load_app()
    :ok
  end

  defp load_app do
    Application.load(@app)
  end
end
