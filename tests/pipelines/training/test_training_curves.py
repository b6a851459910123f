from edu_bias_pipeline.pipelines.training.nodes import training_curves


def test_curves_keep_only_complete_records():
    metrics = {
        "steps": [
            {
                "step": 1,
                "train/loss": 0.69,
                "train/reward_accuracy": 0.5,
                "train/reward_margin": 0.0,
                "train/lr": 1e-3,
            },
            {"step": 2, "eval/loss": 0.6, "eval/rewards/accuracies": 0.7, "eval/rewards/margins": 0.1},
            {
                "step": 3,
                "train/loss": 0.5,
                "train/reward_accuracy": None,
                "train/reward_margin": 0.2,
                "train/lr": 1e-3,
            },
        ]
    }
    train, val = training_curves(metrics)
    assert [r["step"] for r in train] == [1]
    assert [r["step"] for r in val] == [2]
    assert set(train[0]) == {"step", "train/loss", "train/reward_accuracy", "train/reward_margin", "train/lr"}
    assert training_curves({}) == ([], [])
