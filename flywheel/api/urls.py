from django.urls import path

from flywheel.api import views

urlpatterns = [
    path("flywheel/metrics", views.MetricsApi.as_view(), name="api-flywheel-metrics"),
    path("flywheel/reserve-status", views.ReserveStatusApi.as_view(), name="api-flywheel-reserve"),
    path("flywheel/revenue-streams", views.RevenueStreamsApi.as_view(), name="api-flywheel-streams"),
    path("flywheel/calculator", views.CalculatorApi.as_view(), name="api-flywheel-calculator"),
    path("flywheel/comparison/<str:competitor>", views.ComparisonApi.as_view(), name="api-flywheel-comparison"),
    path("flywheel/my-impact", views.MyImpactApi.as_view(), name="api-flywheel-my-impact"),
    path("flywheel/my-impact/export", views.MyImpactExportApi.as_view(), name="api-flywheel-my-impact-export"),
    path("flywheel/my-impact/insights", views.MyInsightsApi.as_view(), name="api-flywheel-my-insights"),
]
