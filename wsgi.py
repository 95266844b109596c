"""WSGI entry point: `gunicorn wsgi:app`, and FLASK_APP for the flask CLI."""

import sys

from webapp import ConfigError, create_app

try:
    app = create_app()
except ConfigError as exc:
    # One clear line naming the key, not a stack trace.
    sys.exit(f"Configuration error: {exc}")
