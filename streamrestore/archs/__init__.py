"""Network definitions that spandrel does not provide, rebuilt from the ncnn graphs we convert."""
