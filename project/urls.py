"""URL map: the admin and the runs app."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("runs.urls")),
]
