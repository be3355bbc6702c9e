"""The browser console: thin Reflex states over the services, pages and components."""
