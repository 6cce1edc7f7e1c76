"""The web dashboard at ``/ui``: static pages that call the API with the caller's own
credentials (docs/dashboard.md). ``register_dashboard(app)`` adds it to the API."""

from tasksaga.api.ui.routes import register_dashboard

__all__ = ["register_dashboard"]
