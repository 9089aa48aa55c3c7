"""Problems and prompts: dataset readers, answer scoring, prompt styles, the synthetic task."""
