"""DPO training outside Kedro: the process the `training` pipeline launches (`dpo.entry`), its settings
(`dpo.config`), the `final/` contract evaluation reads (`dpo.contract`), and the helpers the nodes share."""
