from django.urls import path

from accounts.api import keys, views

urlpatterns = [
    path("auth/register", views.RegisterApi.as_view(), name="api-register"),
    path("auth/token", views.TokenObtainApi.as_view(), name="api-token"),
    path("auth/token/refresh", views.TokenRefreshApi.as_view(), name="api-token-refresh"),
    path("auth/logout", views.LogoutApi.as_view(), name="api-logout"),
    path("me", views.MeApi.as_view(), name="api-me"),
    path("keys", keys.ApiKeysApi.as_view(), name="api-keys"),
    path("keys/<str:key_id>", keys.ApiKeyDetailApi.as_view(), name="api-key"),
]
