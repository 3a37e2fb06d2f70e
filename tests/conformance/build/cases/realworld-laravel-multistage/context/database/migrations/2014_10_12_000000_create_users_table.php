<?php // create users table
