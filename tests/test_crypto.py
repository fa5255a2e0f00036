"""Connection secrets: encrypted at rest, rotatable."""

import pytest
from cryptography.fernet import Fernet

from nodes import crypto
from nodes.models import Connection


@pytest.mark.django_db
def test_rotation_re_encrypts_with_the_new_primary_key(settings) -> None:
    old = settings.FLOWPLATFORM_ENCRYPTION_KEYS[0]
    connection = Connection(name="dw")
    connection.set_url("postgresql://u:pw@h/db")
    connection.save()
    new = Fernet.generate_key().decode()
    settings.FLOWPLATFORM_ENCRYPTION_KEYS = [new, old]
    connection.rotate_keys()
    connection.save()
    settings.FLOWPLATFORM_ENCRYPTION_KEYS = [new]
    assert Connection.objects.get(name="dw").secret_url() == "postgresql://u:pw@h/db"


def test_a_missing_key_is_a_clear_error(settings) -> None:
    token = crypto.encrypt("secret")
    settings.FLOWPLATFORM_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(crypto.SecretError, match="lacks its key"):
        crypto.decrypt(token)
