import os

from django.core.wsgi import get_wsgi_application

from flowplatform.env import refuse_to_start_on_settings_error

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flowplatform.settings")
with refuse_to_start_on_settings_error():
    from flowplatform import telemetry

    telemetry.setup("web")  # before the middleware is loaded: requests are traced
    application = get_wsgi_application()
