<?php // web routes
