"""URLs of the runs app (the webhook and the JSON API mount here)."""

urlpatterns: list = []
