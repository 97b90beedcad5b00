from django.urls import path

from agents import apis as agent_apis
from dispatch import apis

app_name = "dispatch"

urlpatterns = [
    path("assignments/", apis.AssignmentListApi.as_view(), name="assignments"),
    path("assignments/<int:assignment_id>/accept/", apis.AssignmentAcceptApi.as_view(), name="accept"),
    path("assignments/<int:assignment_id>/reject/", apis.AssignmentRejectApi.as_view(), name="reject"),
    path("orders/<int:order_id>/assign/", apis.OrderAssignApi.as_view(), name="assign"),
    path("orders/<int:order_id>/rating/", agent_apis.OrderRatingApi.as_view(), name="rating"),
    path("inquiries/", apis.InquiryListCreateApi.as_view(), name="inquiries"),
    path("inquiries/<int:inquiry_id>/close/", apis.InquiryCloseApi.as_view(), name="inquiry-close"),
    path("inquiries/<int:inquiry_id>/assign/", apis.InquiryAssignApi.as_view(), name="inquiry-assign"),
    path("pool/", apis.PoolListApi.as_view(), name="pool"),
    path("agents/me/", agent_apis.AgentMeApi.as_view(), name="agent-me"),
    path("agents/me/status/", agent_apis.AgentStatusApi.as_view(), name="agent-status"),
    path("agents/me/location/", agent_apis.AgentLocationApi.as_view(), name="agent-location"),
]
