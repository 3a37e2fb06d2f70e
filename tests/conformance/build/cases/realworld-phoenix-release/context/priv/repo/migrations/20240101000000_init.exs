defmodule Hello.Repo.Migrations.Init do end
