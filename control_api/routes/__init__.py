"""One blueprint per resource; each module has `blueprint(services) -> APIBlueprint`."""
