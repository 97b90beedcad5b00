"""On PostgreSQL the audit trail refuses UPDATE and DELETE in the database itself, so no
path — ORM, admin, raw SQL from the app — can rewrite history. (TRUNCATE, used only by test
teardown, does not fire row triggers.)"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION paidan_audit_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'orders_orderevent is append-only: %% refused', TG_OP
    USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER orderevent_append_only BEFORE UPDATE OR DELETE ON orders_orderevent
  FOR EACH ROW EXECUTE FUNCTION paidan_audit_append_only();
"""
DROP = """
DROP TRIGGER IF EXISTS orderevent_append_only ON orders_orderevent;
DROP FUNCTION IF EXISTS paidan_audit_append_only();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("orders", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
