module Greeting
  def self.hello = "Hello from Sinatra"
end
