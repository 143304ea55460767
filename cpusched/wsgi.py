"""WSGI entry point, for tools that want one; the service runs under daphne."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cpusched.settings")
application = get_wsgi_application()
