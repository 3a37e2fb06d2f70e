from flask import Flask


def create_app(settings_override=None):
    app = Flask(__name__, static_folder="../public", static_url_path="")
    return app


app = create_app()
