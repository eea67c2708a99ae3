"""Continued MLM pretraining and long-document fine-tuning on transformers' Trainer."""
