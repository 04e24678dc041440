"""The dummy credentials the local emulators accept, defined once; `stack env` prints them on purpose."""

LOCAL_S3_CREDENTIALS = {
    "aws_access_key_id": "local-access-key",
    "aws_secret_access_key": "local-secret-key",
    "region_name": "us-east-1",
}
LOCAL_SNOWFLAKE_ACCOUNT = "fakesnow"
LOCAL_SNOWFLAKE_USER = "datavault"
LOCAL_SNOWFLAKE_PASSWORD = "local-password"
