"""Training the demo models: teacher training, distillation of students, greedy evaluation."""
