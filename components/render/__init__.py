"""Pure functions of typed config -> script and document text, one host (host/) and Swarm (swarm/) side
by side; imports only components.config and components.constants."""
