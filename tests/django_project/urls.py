from django.urls import path

from . import views

urlpatterns = [
    path("login/", views.login_view),
    path("publish/<str:facility>/", views.publish_view),
    path("fetch/<str:facility>/", views.fetch_view),
    path("_queries/", views.queries_view),
]
