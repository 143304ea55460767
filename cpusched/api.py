"""The REST API (django-ninja), mounted at /api/ with docs at /api/docs."""

from ninja import NinjaAPI

api = NinjaAPI(title="cpusched", version="1", docs_url="/docs")
