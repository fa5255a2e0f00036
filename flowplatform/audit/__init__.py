"""The audit trail: who created, changed, deleted, ran, cancelled or re-ran what, and when.

Every layer records through ``flowplatform.audit.record.record``; who acts and through which
door (admin, API, CLI, schedule) comes from the audit context that the door sets
(``flowplatform.audit.context``). Decision 0012 explains the shape.
"""
