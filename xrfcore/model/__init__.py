"""1-D masked-autoencoder ViT, regressor, input transforms and model files."""
