<?php // DatabaseSeeder
