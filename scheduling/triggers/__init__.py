"""Triggers: what starts a flow besides its schedules (webhooks, other flows, arriving files).

Every trigger event starts its run through ``flows.services.start_run`` under a
``TriggerEvent`` row whose unique (trigger, key) makes a retried delivery find the run it
already started instead of starting a second one (``scheduling.triggers.firing``).
"""
