"""On PostgreSQL both audit trails refuse to be rewritten in the database itself: the order
trail (orders_orderevent, UPDATE and DELETE refused since 0002) now refuses TRUNCATE too, and
the admin's history (django_admin_log) refuses UPDATE, DELETE and TRUNCATE.

TRUNCATE passes only in a session that has run `SET paidan.allow_audit_truncate = 'on'`: the
test suite does it so its flush between transactional tests can empty the tables
(tests/conftest.py), and so does the dispatch benchmark on its throwaway database. The
application never does. A role that owns the tables can still drop these triggers; the trail
is beyond the application's reach, not its database owner's (run the app as a role that does
not own the tables for that).
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION paidan_audit_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION paidan_audit_no_truncate() RETURNS trigger AS $$
BEGIN
  IF current_setting('paidan.allow_audit_truncate', true) = 'on' THEN
    RETURN NULL;
  END IF;
  RAISE EXCEPTION '% is append-only: TRUNCATE refused', TG_TABLE_NAME
    USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER orderevent_no_truncate BEFORE TRUNCATE ON orders_orderevent
  FOR EACH STATEMENT EXECUTE FUNCTION paidan_audit_no_truncate();
CREATE TRIGGER admin_log_append_only BEFORE UPDATE OR DELETE ON django_admin_log
  FOR EACH ROW EXECUTE FUNCTION paidan_audit_append_only();
CREATE TRIGGER admin_log_no_truncate BEFORE TRUNCATE ON django_admin_log
  FOR EACH STATEMENT EXECUTE FUNCTION paidan_audit_no_truncate();
"""
DROP = """
DROP TRIGGER IF EXISTS admin_log_no_truncate ON django_admin_log;
DROP TRIGGER IF EXISTS admin_log_append_only ON django_admin_log;
DROP TRIGGER IF EXISTS orderevent_no_truncate ON orders_orderevent;
DROP FUNCTION IF EXISTS paidan_audit_no_truncate();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0008_default_sla_and_exception_types"),
        ("admin", "0003_logentry_add_action_flag_choices"),
    ]
    operations = [migrations.RunPython(forwards, backwards)]
