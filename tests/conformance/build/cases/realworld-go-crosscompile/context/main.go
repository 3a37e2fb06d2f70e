package main

import (
	"log"
	"net/http"

	"example.com/myapp/internal/handler"
	"github.com/go-chi/chi/v5"
)

func main() {
	r := chi.NewRouter()
	r.Get("/", handler.Hello)
	log.Fatal(http.ListenAndServe(":8080", r))
}
