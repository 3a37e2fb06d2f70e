bar-contents-longer
