@echo off
rem Wan Compat launcher for Windows.
rem   launch.bat [app args]           set up .venv when needed, then start the web app
rem   launch.bat test [pytest args]   set up .venv with the test extras and run the tests
rem Environment:
rem   TORCH_VERSION    torch release to install (default below)
rem   TORCH_INDEX_URL  wheel index for torch, used with --index-url. Default: with an NVIDIA
rem                    GPU, PyTorch's index of the build for its driver - cu130 for 580+,
rem                    else cu126, see launcher\launch_helper.py; without one PyPI, whose
rem                    Windows build is CPU-only. "pypi" forces PyPI.
rem   PYTHON           the 64-bit Python 3.10+ to create .venv with
rem   WAN_COMPAT_ALLOW_CPU=1   keep a torch that cannot use the NVIDIA GPU
rem   WAN_COMPAT_SETUP_ONLY=1  stop after the set-up
rem Written with goto rather than parenthesised blocks: cmd expands variables in a block
rem once, before the block runs, and a closing parenthesis in an echo ends the block.
rem Arguments reach the app and pytest as %* untouched: shift would split them at , ; =
rem and stop at an empty "". The shared logic (index, checks, install key) is in
rem launcher\launch_helper.py, which launch.sh uses too.
setlocal EnableExtensions DisableDelayedExpansion

rem The defaults, in one place (the driver-to-build table is in launcher\launch_helper.py).
if not defined TORCH_VERSION set "TORCH_VERSION=2.13.0"

rem pushd, not cd: pushd gives a network folder (\\server\share) a drive letter.
pushd "%~dp0"
if errorlevel 1 goto no_folder
set "ROOT=%CD%"
set "VENV=%CD%\.venv"
set "PY=%CD%\.venv\Scripts\python.exe"
set "STAMP=%CD%\.venv\.install-stamp"
set "PIPLOG=%CD%\.venv\pip-output.txt"
set "HELPER=%CD%\launcher\launch_helper.py"
set "MODE=app"
if /i "%~1"=="test" set "MODE=test"

rem --- the virtual environment ---------------------------------------------------------
if not exist "%PY%" goto make_venv
"%PY%" -c "import sys; sys.exit(0 if sys.version_info >= (3, 10) and sys.maxsize > 2**32 else 1)" >nul 2>&1
if errorlevel 1 goto bad_venv
rem Before its first install, .venv's pip must run too (a window closed during -m venv).
if exist "%STAMP%" goto venv_ready
"%PY%" -m pip --version >nul 2>&1
if not errorlevel 1 goto venv_ready
:bad_venv
echo [launch] .venv is incomplete - its Python or pip does not run, e.g. after an interrupted first start; recreating it.
rmdir /s /q "%VENV%"
:make_venv
call :find_python
if not defined BASE_PY goto no_python
%BASE_PY% "%HELPER%" preflight
if errorlevel 1 goto fail
set "PREFLIGHT_DONE=1"
echo [launch] Creating .venv with %BASE_PY%
%BASE_PY% -m venv "%VENV%"
if errorlevel 1 goto venv_failed
:venv_ready

rem --- torch build and install key (TORCH_INDEX_URL, or the build for this GPU) ----------
set "CHOSEN_INDEX="
for /f "delims=" %%I in ('call "%PY%" "%HELPER%" index') do set "CHOSEN_INDEX=%%I"
set "TORCH_INDEX_URL=%CHOSEN_INDEX%"
set "APP_KEY="
set "TEST_KEY="
for /f "delims=" %%H in ('call "%PY%" "%HELPER%" key app "%TORCH_VERSION%" "%TORCH_INDEX_URL%" requirements.txt') do set "APP_KEY=%%H"
for /f "delims=" %%H in ('call "%PY%" "%HELPER%" key test "%TORCH_VERSION%" "%TORCH_INDEX_URL%" requirements.txt requirements-test.txt') do set "TEST_KEY=%%H"
if not defined TEST_KEY goto helper_failed

rem --- install unless the stamp says nothing changed -------------------------------------
set "NEEDED=%APP_KEY%"
if "%MODE%"=="test" set "NEEDED=%TEST_KEY%"
set "STAMPED="
if exist "%STAMP%" for /f "usebackq delims=" %%L in ("%STAMP%") do if "%%L"=="%NEEDED%" set "STAMPED=1"
if defined STAMPED goto installed
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
if "%WAN_COMPAT_SETUP_ONLY%"=="1" goto done
"%PY%" app.py %*
set "RC=%ERRORLEVEL%"
if not "%RC%"=="0" pause
goto end

rem --- the tests ------------------------------------------------------------------------
:run_tests
if not defined WAN_COMPAT_NO_BROWSER set "WAN_COMPAT_NO_BROWSER=the browser tests drive Debian's chromium and run on Linux only"
if not defined WAN_COMPAT_NO_WINE set "WAN_COMPAT_NO_WINE=launch.bat runs under Wine on Linux only"
if "%WAN_COMPAT_SETUP_ONLY%"=="1" goto done
set "HF_HUB_OFFLINE=1"
rem run-tests drops the "test" that %* starts with.
"%PY%" "%HELPER%" run-tests %*
set "RC=%ERRORLEVEL%"
goto end

rem --- failures and the end --------------------------------------------------------------
:no_folder
echo [launch] Could not open the folder of launch.bat. Copy the Wan Compat folder to this computer, e.g. C:\WanCompat, and start it there.
goto fail
:no_python
if defined BITS32 goto only_32bit
echo [launch] A 64-bit Python 3.10 or newer was not found.
echo [launch] Install Python 3.12 from https://www.python.org/downloads/ and tick "Add python.exe to PATH", then run launch.bat again.
echo [launch] Or set PYTHON to the full path of a python.exe, version 3.10 or newer.
goto fail
:only_32bit
echo [launch] %BITS32% is a 32-bit Python, and torch exists only for 64-bit Python.
echo [launch] Install Python 3.12 "Windows installer (64-bit)" from https://www.python.org/downloads/ and tick "Add python.exe to PATH", then run launch.bat again.
goto fail
:venv_failed
echo [launch] Could not create .venv with %BASE_PY%, see the message above. If it names a file that is locked or access that is denied, pause OneDrive or the antivirus, or move the Wan Compat folder to e.g. C:\WanCompat; otherwise repair Python with its installer from python.org. Then run launch.bat again.
if exist "%VENV%" rmdir /s /q "%VENV%"
goto fail
:helper_failed
echo [launch] The launcher's helper, launcher\launch_helper.py, did not run with .venv's Python, see above. Delete the .venv folder and run launch.bat again.
goto fail
:fail
set "RC=1"
if "%MODE%"=="app" pause
goto end
:done
set "RC=0"
:end
popd
exit /b %RC%

rem --- subroutines ----------------------------------------------------------------------
:find_python
rem Sets BASE_PY to a command that runs a 64-bit Python 3.10 or newer, or leaves it
rem undefined; BITS32 to a 32-bit Python 3.10+ that was passed over.
set "BASE_PY="
set "BITS32="
if not defined PYTHON goto try_py_launcher
rem set PYTHON="C:\...\python.exe" (with quotes) would be quoted twice below.
set "PYTHON=%PYTHON:"=%"
call :try_python "%PYTHON%"
if defined BASE_PY exit /b 0
echo [launch] PYTHON is set to "%PYTHON%", which does not run a 64-bit Python 3.10 or newer; looking for another Python.
:try_py_launcher
for %%V in (3.12 3.11 3.13 3.10 3.14) do if not defined BASE_PY call :try_python py -%%V
if defined BASE_PY exit /b 0
call :try_python py -3
if defined BASE_PY exit /b 0
rem "python" may be the Microsoft Store stub, which fails this check; that is fine.
call :try_python python
exit /b 0

:try_python
rem Sets BASE_PY to the command given when it runs a 64-bit Python 3.10+, BITS32 when it is 32-bit.
%* -c "import sys; sys.exit(0 if sys.version_info >= (3, 10) and sys.maxsize > 2**32 else 1)" >nul 2>&1
if not errorlevel 1 set BASE_PY=%*
if defined BASE_PY exit /b 0
%* -c "import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)" >nul 2>&1
if not errorlevel 1 set BITS32=%*
exit /b 0

:install
rem Installs torch (showing pip's download progress), checks that it can use an NVIDIA GPU
rem that nvidia-smi sees, then installs the requirements. Exit code 1 after a message.
if defined PREFLIGHT_DONE goto preflight_done
"%PY%" "%HELPER%" preflight
if errorlevel 1 exit /b 1
:preflight_done
set "TORCH_FROM=PyPI"
if defined TORCH_INDEX_URL set "TORCH_FROM=%TORCH_INDEX_URL%"
rem pip calls an installed torch==X "already satisfied" even when it is another build
rem (the CPU one, say) than the index serves, so such a torch is removed first.
"%PY%" "%HELPER%" build-differs "%TORCH_INDEX_URL%"
if errorlevel 1 goto install_torch
echo [launch] Replacing the installed torch with the build from %TORCH_INDEX_URL%
"%PY%" -m pip uninstall -q -y torch
:install_torch
echo [launch] Installing torch==%TORCH_VERSION% from %TORCH_FROM% - the first time downloads about 3 GB and takes a few minutes.
rem --index-url, not --extra-index-url: a build missing from the index must fail, not
rem quietly become PyPI's CPU-only one. pip's errors are kept for explain-pip.
if defined TORCH_INDEX_URL goto torch_from_index
"%PY%" -m pip install --disable-pip-version-check torch==%TORCH_VERSION% 2> "%PIPLOG%"
goto torch_done
:torch_from_index
"%PY%" -m pip install --disable-pip-version-check torch==%TORCH_VERSION% --index-url "%TORCH_INDEX_URL%" 2> "%PIPLOG%"
:torch_done
set "PIP_RC=%ERRORLEVEL%"
type "%PIPLOG%"
if not "%PIP_RC%"=="0" goto torch_failed
"%PY%" "%HELPER%" cuda-check "%TORCH_INDEX_URL%"
if errorlevel 1 exit /b 1
set "REQS=-r requirements.txt"
if "%MODE%"=="test" set "REQS=-r requirements.txt -r requirements-test.txt"
echo [launch] Installing the packages in requirements.txt
"%PY%" -m pip install -q --disable-pip-version-check %REQS% 2> "%PIPLOG%"
set "PIP_RC=%ERRORLEVEL%"
type "%PIPLOG%"
if not "%PIP_RC%"=="0" goto reqs_failed
del /q "%PIPLOG%" >nul 2>&1
exit /b 0
:torch_failed
"%PY%" "%HELPER%" explain-pip "%PIPLOG%" torch
exit /b 1
:reqs_failed
"%PY%" "%HELPER%" explain-pip "%PIPLOG%" "the packages in requirements.txt"
exit /b 1
