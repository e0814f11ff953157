"""What the coordinator and the sites both use: model families, organs, surgery, data, crypto."""
