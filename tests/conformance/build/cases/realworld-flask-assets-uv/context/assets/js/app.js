import "@hotwired/turbo"
