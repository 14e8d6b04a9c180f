"""The signed request protocol between participants: one server and one client for all."""
