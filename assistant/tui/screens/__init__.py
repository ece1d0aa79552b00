"""Screens of the chat: approval dialog, small dialogs, the start screen for setup problems."""
