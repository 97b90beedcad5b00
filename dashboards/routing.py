from django.urls import path

from dashboards.consumers import AgentConsumer, BoardConsumer

websocket_urlpatterns = [
    path("ws/board/", BoardConsumer.as_asgi()),
    path("ws/agent/", AgentConsumer.as_asgi()),
]
