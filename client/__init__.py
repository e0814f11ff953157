"""The site: Flower ClientApp, organ training, sealing."""
