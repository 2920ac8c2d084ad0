from django.urls import path

from revenue.api import views

urlpatterns = [
    path("admin/revenue/onchain-failures", views.OnchainFailuresApi.as_view(), name="api-onchain-failures"),
    path(
        "admin/revenue/onchain-worker-status", views.OnchainWorkerStatusApi.as_view(), name="api-onchain-worker-status"
    ),
    path(
        "admin/revenue/events/<str:event_id>/retry",
        views.RevenueEventRetryApi.as_view(),
        name="api-revenue-event-retry",
    ),
    path(
        "admin/revenue/batches/<str:batch_id>/abandon",
        views.DeliveryBatchAbandonApi.as_view(),
        name="api-delivery-batch-abandon",
    ),
]
