"""Trigger handlers: one thin module per trigger, registered as blueprints by function_app.py."""
