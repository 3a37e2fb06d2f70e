require "sinatra/base"
require_relative "lib/greeting"

class App < Sinatra::Base
  get("/") { Greeting.hello }
  get("/health") { "ok" }
end
