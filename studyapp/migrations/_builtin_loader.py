def load(apps, schema_editor):
    from studyapp.services.prompts import builtin_prompt_sets_load

    builtin_prompt_sets_load(apps.get_model("studyapp", "PromptSet"), apps.get_model("studyapp", "Prompt"))
