"""Names the writer and the report.md sections share: the files written beside report.md, and the
columns that name one configuration. A module of their own so no section has to import the writer."""

PLOT_STEP = "accuracy_vs_step.png"
PLOT_FRACTION = "accuracy_vs_teacher_fraction.png"
PLOT_CHECKPOINTS = "accuracy_vs_step_by_checkpoint.png"
PLOT_RESCUE = "earliest_rescue.png"
CONFIG_COLUMNS = ["task", "student", "teacher", "checkpoint"]
COUNTERFACTUALS = "counterfactuals.csv"
