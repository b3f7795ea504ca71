"""The model zoo: HarDNet (ours) and torchvision baselines behind one registry (host-only)."""
from models.registry import ModelCard, create_model, get_model_card, list_models, register_model

__all__ = ["ModelCard", "create_model", "get_model_card", "list_models", "register_model"]
