@echo off
rem Wan Compat launcher for Windows.
rem   launch.bat [app args]           set up .venv when needed, then start the web app
rem   launch.bat test [pytest args]   set up .venv with the test extras and run the tests
rem Environment:
rem   TORCH_VERSION    torch release to install (default 2.13.0)
rem   TORCH_INDEX_URL  wheel index for torch; default: PyTorch's CUDA 12.8 index when
rem                    nvidia-smi is found (CUDA 12.6 for drivers older than 570), else
rem                    PyPI, whose Windows build is CPU-only
rem   PYTHON           the Python 3.10+ to create .venv with
rem   WAN_COMPAT_SETUP_ONLY=1  stop after the set-up
rem Written with goto rather than parenthesised blocks: cmd expands variables in a block
rem once, before the block runs, and a closing parenthesis in an echo ends the block.
setlocal EnableExtensions DisableDelayedExpansion
cd /d "%~dp0"

set "VENV=%~dp0.venv"
set "PY=%VENV%\Scripts\python.exe"
set "STAMP=%VENV%\.install-stamp"
if not defined TORCH_VERSION set "TORCH_VERSION=2.13.0"

set "MODE=app"
set "ARGS="
if /i not "%~1"=="test" goto collect_args
set "MODE=test"
shift
:collect_args
if "%~1"=="" goto args_done
set ARGS=%ARGS% %1
shift
goto collect_args
:args_done

rem --- the virtual environment ---------------------------------------------------------
if not exist "%PY%" goto make_venv
"%PY%" -c "import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)" >nul 2>&1
if not errorlevel 1 goto venv_ready
echo [launch] .venv exists but its Python does not run or is older than 3.10; recreating it.
rmdir /s /q "%VENV%"
:make_venv
call :find_python
if not defined BASE_PY goto no_python
echo [launch] Creating .venv with %BASE_PY%
%BASE_PY% -m venv "%VENV%"
if errorlevel 1 goto venv_failed
:venv_ready

rem --- torch build: CUDA when an NVIDIA driver is present --------------------------------
if defined TORCH_INDEX_URL goto index_chosen
where nvidia-smi >nul 2>&1
if errorlevel 1 goto index_chosen
rem CUDA 12.8 wheels need driver 570 or newer; older drivers get the CUDA 12.6 build.
set "DRIVER_MAJOR="
for /f "tokens=1 delims=." %%D in ('nvidia-smi --query-gpu^=driver_version --format^=csv^,noheader 2^>nul') do if not defined DRIVER_MAJOR set "DRIVER_MAJOR=%%D"
if not defined DRIVER_MAJOR set "DRIVER_MAJOR=999"
rem Anything but digits (an nvidia-smi error message) counts as a new driver.
for /f "delims=0123456789" %%X in ("%DRIVER_MAJOR%") do set "DRIVER_MAJOR=999"
set "TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128"
if %DRIVER_MAJOR% LSS 570 set "TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126"
:index_chosen

rem --- install unless the stamp says nothing changed -------------------------------------
set "KEYFILE=%VENV%\.install-key.tmp"
> "%KEYFILE%" echo app torch=%TORCH_VERSION% index=%TORCH_INDEX_URL%
type requirements.txt >> "%KEYFILE%"
call :hash "%KEYFILE%"
set "APP_KEY=%HASH%"
> "%KEYFILE%" echo test torch=%TORCH_VERSION% index=%TORCH_INDEX_URL%
type requirements.txt >> "%KEYFILE%"
type requirements-test.txt >> "%KEYFILE%"
call :hash "%KEYFILE%"
set "TEST_KEY=%HASH%"
del /q "%KEYFILE%" >nul 2>&1

set "NEEDED=%APP_KEY%"
if "%MODE%"=="test" set "NEEDED=%TEST_KEY%"
if not exist "%STAMP%" goto do_install
findstr /x /c:"%NEEDED%" "%STAMP%" >nul 2>&1
if not errorlevel 1 goto installed
:do_install
if exist "%STAMP%" del /q "%STAMP%"
call :install
if errorlevel 1 goto fail
rem A test install also satisfies the app, so it records both keys.
> "%STAMP%" echo %APP_KEY%
if not "%MODE%"=="test" goto installed
>> "%STAMP%" echo %TEST_KEY%
:installed

if not defined GRADIO_ANALYTICS_ENABLED set "GRADIO_ANALYTICS_ENABLED=False"
if "%MODE%"=="test" goto run_tests

rem --- the app --------------------------------------------------------------------------
if "%WAN_COMPAT_SETUP_ONLY%"=="1" exit /b 0
"%PY%" app.py %ARGS%
set "RC=%ERRORLEVEL%"
if not "%RC%"=="0" pause
exit /b %RC%

rem --- the tests ------------------------------------------------------------------------
:run_tests
if not defined WAN_COMPAT_NO_BROWSER set "WAN_COMPAT_NO_BROWSER=the browser tests drive Debian's chromium and run on Linux only"
if "%WAN_COMPAT_SETUP_ONLY%"=="1" exit /b 0
set "HF_HUB_OFFLINE=1"
"%PY%" -m pytest -q tests %ARGS%
exit /b %ERRORLEVEL%

rem --- failures -------------------------------------------------------------------------
:no_python
echo [launch] Python 3.10 or newer was not found.
echo [launch] Install Python 3.12 from https://www.python.org/downloads/ and tick "Add python.exe to PATH", then run launch.bat again.
echo [launch] Or set PYTHON to the full path of a python.exe, version 3.10 or newer.
goto fail
:venv_failed
echo [launch] Could not create .venv with %BASE_PY%. Reinstall Python from python.org, then run launch.bat again.
if exist "%VENV%" rmdir /s /q "%VENV%"
goto fail
:fail
if "%MODE%"=="app" pause
exit /b 1

rem --- subroutines ----------------------------------------------------------------------
:find_python
rem Sets BASE_PY to a command that runs Python 3.10 or newer, or leaves it undefined.
set "BASE_PY="
if not defined PYTHON goto try_py_launcher
"%PYTHON%" -c "import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)" >nul 2>&1
if not errorlevel 1 set BASE_PY="%PYTHON%"
if defined BASE_PY exit /b 0
:try_py_launcher
for %%V in (3.12 3.11 3.13 3.10 3.14) do if not defined BASE_PY py -%%V -c "import sys" >nul 2>&1 && set "BASE_PY=py -%%V"
if defined BASE_PY exit /b 0
py -3 -c "import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)" >nul 2>&1
if not errorlevel 1 set "BASE_PY=py -3"
if defined BASE_PY exit /b 0
rem "python" may be the Microsoft Store stub, which fails this check; that is fine.
python -c "import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)" >nul 2>&1
if not errorlevel 1 set "BASE_PY=python"
exit /b 0

:hash
rem Sets HASH to the SHA-256 of the file given; certutil prints a title line, the hash, a status line.
set "HASH="
for /f "skip=1 delims=" %%H in ('certutil -hashfile "%~1" SHA256') do if not defined HASH set "HASH=%%H"
rem Older Windows prints the hash with spaces between the bytes.
if defined HASH set "HASH=%HASH: =%"
exit /b 0

:install
set "TORCH_EXTRA="
if defined TORCH_INDEX_URL set "TORCH_EXTRA=--extra-index-url %TORCH_INDEX_URL%"
if not defined TORCH_INDEX_URL goto install_torch
rem pip calls an installed torch==X "already satisfied" even when it is the CPU build and
rem the index serves a CUDA build (X+cu128), so such a torch is removed first.
"%PY%" -c "import importlib.metadata as m, re, sys; tag = sys.argv[1].rstrip('/').rsplit('/', 1)[-1]; v = next((d.version for d in m.distributions() if (d.metadata['Name'] or '').lower() == 'torch'), ''); sys.exit(0 if v and re.fullmatch(r'cu\d+|cpu|rocm[\d.]+|xpu', tag) and not v.endswith('+' + tag) else 1)" "%TORCH_INDEX_URL%"
if errorlevel 1 goto install_torch
echo [launch] Replacing the installed torch with the build from %TORCH_INDEX_URL%
"%PY%" -m pip uninstall -q -y torch
:install_torch
echo [launch] Installing torch==%TORCH_VERSION% %TORCH_EXTRA% - the first time takes a few minutes
"%PY%" -m pip install -q --disable-pip-version-check torch==%TORCH_VERSION% %TORCH_EXTRA%
if errorlevel 1 goto torch_failed
set "REQS=-r requirements.txt"
if "%MODE%"=="test" set "REQS=-r requirements.txt -r requirements-test.txt"
echo [launch] Installing the packages in requirements.txt
"%PY%" -m pip install -q --disable-pip-version-check %REQS%
if errorlevel 1 goto reqs_failed
exit /b 0
:torch_failed
echo [launch] Installing torch failed, see above. Check your internet connection, or set TORCH_VERSION or TORCH_INDEX_URL; for an older NVIDIA driver try TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126
exit /b 1
:reqs_failed
echo [launch] Installing the requirements failed, see above.
exit /b 1
