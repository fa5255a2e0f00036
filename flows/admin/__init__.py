"""The Django admin as flow designer and run monitor."""

from django.contrib import admin

from flows.admin.flow import FlowAdmin
from flows.admin.inlines import FlowEdgeInline, FlowNodeInline
from flows.admin.runs import FlowRunAdmin

admin.site.site_header = "Flow Platform"
admin.site.site_title = "Flow Platform"
admin.site.index_title = "Design flows, run them, follow their runs"

__all__ = ["FlowAdmin", "FlowEdgeInline", "FlowNodeInline", "FlowRunAdmin"]
