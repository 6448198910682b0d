"""Model providers behind the `ModelProvider` seam: fake, chat (Chat Completions upstream)."""
